from conveyor.serve._supervisor import main

main()
