"""The pure core: vocabulary, manifest, layers, host facts, plan. May not do any I/O."""
