"""The model: the wide ResNet (`wrn`), loading and checking model files (`io`) with their cards
(`cards`), the data (`data`, `labels`), training (`train`, `distributed`) and evaluation."""
