from dysco.cli import main

raise SystemExit(main())
