from modelport.cli.main import app

app(prog_name="modelport")
