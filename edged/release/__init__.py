"""Release bundles and the release tree: what a node installs, how it starts and rolls back.

`launcher` is standard library only (it runs before any release); `platforms`, `manifest`,
`bundle`, `schemas` and `build` are shared by `edgectl release build` and the node.
"""
