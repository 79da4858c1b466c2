from mcosup.cli import main

raise SystemExit(main())
