"""What the page needs that is not Streamlit: the model server (`serving`) and the link
settings (`settings`)."""
