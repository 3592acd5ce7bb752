"""dysco.softswitch"""
