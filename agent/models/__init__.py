"""Model clients: the local llama.cpp model and (later) the API model."""
