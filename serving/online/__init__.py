"""The online service: BentoML API, runtime, online feature store, decision log, reasons and HTTP guards."""
