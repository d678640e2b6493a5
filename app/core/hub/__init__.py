"""The Hugging Face Hub: HTTP with the token kept to the Hub, repo listings, file names, verified resumable downloads into the shared cache."""
