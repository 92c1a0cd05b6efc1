from thingcore.cli import main

main()
