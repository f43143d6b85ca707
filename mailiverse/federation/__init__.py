"""Mail between appliances: finding another domain's appliance and its key directory (docs/e2e.md)."""
