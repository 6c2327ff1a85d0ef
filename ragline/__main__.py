from ragline.cli import app

app(prog_name="ragline")
