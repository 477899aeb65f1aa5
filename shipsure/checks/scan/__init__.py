"""`shipsure scan`: an offline fsck of distribution's storage (see `core` for the walk).

Modules: `options` says what a scan is asked to do (light to import: the command line reads
it before the walk's modules load), `core` runs a scan, `walk` reads one repository,
`executor` runs walks in worker processes or threads, `kinds` names what a scan finds,
`recheck` confirms a fault on storage before it is reported, `merge` joins sharded reports,
`repair` and `apply` plan and carry out the safe repairs, `shard` splits the repositories.
Nothing is imported here, so importing one module loads only what it needs.
"""
