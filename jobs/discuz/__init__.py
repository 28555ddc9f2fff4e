"""Creating a website's user in a Discuz! forum (UCenter), through the API, the database or uc_client."""
