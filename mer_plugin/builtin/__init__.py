"""mer's own components: decoders, tag writers and backbones, each module a plugin.

They reach mer through the hooks of `mer_plugin.hookspecs`, registered by
`mer_plugin.plugins` exactly as third-party plugins are, and are only ever looked up
through the plugin manager; nothing else imports them.
"""
