"""Pictures and documents from maps, without TensorFlow: colour maps, Plotly figures, PNG
pictures, exports and the HTML report pieces."""
