"""Role-play: persona agents on autogen, the CLCA turn protocol, conversations, intents, simulation."""
