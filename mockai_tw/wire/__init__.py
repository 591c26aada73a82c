"""Wire format: reply plans rendered as OpenAI's exact JSON and SSE bytes. Pure."""
