"""The settlement worker: accepted usages planned into batches (``planning``), signed by the
attester and sent by the relayer (``sending``), followed to confirmation (``confirming``), their
outcomes read from the receipt (``outcomes``), watched for reorgs (``reorgs``); ``worker`` runs the
loop under a lease, ``metrics`` counts it."""
