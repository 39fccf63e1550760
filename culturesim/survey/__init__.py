"""The survey layer: questions, prompts, answers and their distributions, the seen / held-out split
and the topics, below every stage that administers a survey (evaluate, probe, corpus, the
teacher) and the report that reads their answers. A change here changes all of them at once,
which is why it lives beneath them and not inside one of them.
"""
