from ox_profile.cli import main
raise SystemExit(main())
