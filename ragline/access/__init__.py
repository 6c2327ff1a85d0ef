"""Document-level access control: who may read a chunk, decided inside every engine search.

- `principals`: the identity strings (`user:ann`, `group:hr`, `public`) and a caller's
  effective set (`Viewer`), with the hash caches and traces key on.
- `groups`: group membership resolvers (a static TOML/JSON file built in; plugins through
  the `ragline.group_resolvers` entry point), nested groups flattened, cached for a TTL.
- `policy`: `[access]` turned into a `Viewer` per call (refusing calls without an identity
  when access is enabled, an explicit admin list bypassing the filter).
- `readers`: what a document's chunks store as their readers, from connector and config.
- `canary`: the start-up self-test that the store really applies the readers filter.
"""
