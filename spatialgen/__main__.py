from spatialgen.cli import app

app()
