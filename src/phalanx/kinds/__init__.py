"""Case kinds: what each stage of a case runs on a host, and how it is judged."""
