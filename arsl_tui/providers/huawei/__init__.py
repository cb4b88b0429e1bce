"""Huawei Cloud backend: the only place that imports the Huawei SDKs."""
