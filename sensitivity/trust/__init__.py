"""How far a prediction can be trusted: temperature calibration (`calibration`), the
out-of-distribution detector (`ood`), the outlier pictures it is fitted on (`outliers`) and
the `calibrate` command that fits both (`confidence`)."""
