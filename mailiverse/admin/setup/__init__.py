"""First-boot set-up of an appliance: its configuration file, DKIM key, DNS records and their check."""
