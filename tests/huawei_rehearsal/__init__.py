"""Loopback stand-ins for the Huawei services the pipeline uses, and the launcher that starts them."""
