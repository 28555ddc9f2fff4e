"""The activation e-mail: templates, the message, cooperative SMTP delivery, and the job itself."""
