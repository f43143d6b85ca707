"""The API's routes, one module per resource: auth, account, store, keys, send, and the public and static routes."""
