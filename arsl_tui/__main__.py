from arsl_tui.cli import main

raise SystemExit(main())
