"""Query pipelines: typed steps (`steps`), the runner that executes them (`runner`), the
prompt registry (`prompts`) and grounded synthesis (`synthesis`). The models they call are
in `ragline.llm`."""
