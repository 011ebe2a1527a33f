from conveyor.serve._worker import main

main()
