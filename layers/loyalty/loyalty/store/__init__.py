"""The only package that talks to DynamoDB. Keys live in keys.py; boto3 errors become domain errors here."""
