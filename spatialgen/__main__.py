from spatialgen.cli import main

main()
