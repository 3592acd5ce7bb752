"""dysco.runtime"""
