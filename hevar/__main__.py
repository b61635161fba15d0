from hevar.views.cli import main

main()
