"""mailbot: the email-driven complaints bot for One Million Mentors."""

__version__ = "0.1.0"
