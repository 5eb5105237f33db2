"""The aq asset graph, one folder per pipeline stage, autoloaded by `dg` and by
`aq_assets.definitions`: every module here is imported and its assets, checks, jobs,
schedules and sensors are collected. Pure functions the stages share live outside, in
`aq_assets.ml`, `aq_assets.warehouse` and `aq_assets.partitions`."""
