"""App distribution: the .sbx bundle (export, safe reading), install records, desktop entries."""
