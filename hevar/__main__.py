from hevar.cli import main

main()
