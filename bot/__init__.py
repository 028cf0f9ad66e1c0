"""bothbot core: engine, messages, commands, model routing, state, settings, CLI."""
