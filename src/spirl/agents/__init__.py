"""Layer 4, agents: encoders and Q-networks, the Rainbow pieces, prioritized replay, the agent, several seeds in
one stacked learner, attention read-outs and the per-frame representation a run feeds its agent."""
