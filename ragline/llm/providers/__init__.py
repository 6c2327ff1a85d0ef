"""One small client per wire protocol: `openai` (OpenAI-compatible chat completions, sharing
`http_common` with the others over HTTP), `anthropic` (Messages), `ollama` (native API) and
`llamacpp` (in-process, the offline default). Nothing is imported here: `ragline.llm.stack`
imports a provider's module only when the config names it."""
