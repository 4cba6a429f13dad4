"""The web surface: the Gradio chat mounted on FastAPI, and the article pages.

Importing this package imports nothing heavy; ``sme_qa.web.server.serve`` starts the app.
"""
