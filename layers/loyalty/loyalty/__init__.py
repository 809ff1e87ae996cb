"""loyalty: members, points and their ledger for online shops, on AWS Lambda and DynamoDB.

domain/   pure rules over pydantic models (no boto3, no clock: time is passed in)
store/    the only module that talks to DynamoDB
service/  use cases: one business event -> one DynamoDB transaction
api/      the HTTP edge (Powertools resolver), webhooks/ the signed intake
"""
