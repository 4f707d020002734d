"""Pinned upstream components: catalog, content-addressed cache, fetch, bundles, patches.

- ``catalog``: the shipped ``catalog.yaml`` and a site's overrides (version, sha256, mirror);
- ``cache``: verified files named by their sha256;
- ``fetch``: HTTP downloads (proxy variables honoured, resumed with Range);
- ``bundle``: one tar.gz with the files and a lock file, for machines without network;
- ``manifests``: what stages read: parsed objects of cached files, never the network;
- ``patches``: typed changes to parsed objects (namespace, images, pull policy, placement).

Only ``fetch`` touches the network; stage rendering reads the cache only.
"""
