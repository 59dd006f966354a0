"""App distribution: .sbx bundles, install records, desktop entries; never prints."""
