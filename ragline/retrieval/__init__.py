"""Retrieval: embeddings and the vector store contract with its Qdrant implementations."""
