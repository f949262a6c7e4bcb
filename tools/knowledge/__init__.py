"""Knowledge retrieval behind the `knowledge_search` tool."""
