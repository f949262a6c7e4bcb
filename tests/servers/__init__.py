"""Small real HTTP servers on loopback that behave like the platforms caseplan talks to."""
