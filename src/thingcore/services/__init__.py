"""Small bus services: clients of the broker that answer on AWS's reserved topics."""
