from textunes.cli import main

raise SystemExit(main())
