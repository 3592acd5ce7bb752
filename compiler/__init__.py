"""dysco.compiler"""
